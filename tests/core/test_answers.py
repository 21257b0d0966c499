"""A body encoded once with holes (`studios.services.answers`) renders as the body built in full
would, whatever text the stored values hold, and signs a new link every time."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from typing import Any

import pytest

from studios.db.models import utcnow
from studios.services import answers
from studios.services.answers import Answer, Holes
from studios.services.keys import Caller, is_online

CALLER = Caller(id=7, username="ann", name="Ann", is_admin=False)


class Links:
    def __init__(self) -> None:
        self.counter = itertools.count()

    def display_url(self, deployment_id: int, user_id: int) -> str:
        return f"http://d{deployment_id}.localhost/_auth?u={user_id}&token={next(self.counter)}"


def body(name: str, holes: Holes | None, seen: Any, links: Links) -> Any:
    online = holes.online(seen) if holes is not None else is_online(seen)
    url = holes.display_url(3) if holes is not None else links.display_url(3, CALLER.id)
    return [{"name": name, "author": {"online": online}, "mostRecentDeployment": {"displayUrl": url}, "params": [name, "\x00", "é"]}]


NAMES = ["plain", 'quotes " and \\ backslashes', "\x00 a NUL \x00", "\x00x:0\x00", "💡 ünïcödé", '"\\u0000', "</script>"]


@pytest.mark.parametrize("name", NAMES)
def test_renders_as_the_full_build(name: str) -> None:
    links = Links()
    for seen in (utcnow(), utcnow() - timedelta(days=1), None):
        answer = Answer(lambda holes, seen=seen: body(name, holes, seen, links))
        rendered = json.loads(answer.render(CALLER, links))
        full = json.loads(answers.encode(body(name, None, seen, links)))
        assert rendered[0]["name"] == name
        assert rendered[0]["author"]["online"] is full[0]["author"]["online"] is is_online(seen)
        assert rendered[0]["params"] == full[0]["params"]
        assert rendered[0]["mostRecentDeployment"]["displayUrl"].startswith("http://d3.localhost/_auth?u=7&token=")


def test_every_render_signs_a_new_link() -> None:
    links = Links()
    answer = Answer(lambda holes: body("x", holes, None, links))
    urls = {json.loads(answer.render(CALLER, links))[0]["mostRecentDeployment"]["displayUrl"] for _ in range(5)}
    assert len(urls) == 5


def test_a_stored_text_that_spells_a_hole_is_never_taken_for_one() -> None:
    """Even with this process's nonce in a studio's name, the body stays right (built in full)."""
    links = Links()
    forged = f"\x00{answers._NONCE}:0\x00"
    answer = Answer(lambda holes: body(forged, holes, None, links))
    rendered = json.loads(answer.render(CALLER, links))
    assert rendered[0]["name"] == forged
    assert rendered[0]["params"][0] == forged
    assert rendered[0]["mostRecentDeployment"]["displayUrl"].startswith("http://d3.localhost/")
