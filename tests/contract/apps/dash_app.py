"""A Dash app for the browser tests: a text input and a line that follows it. `server` is the
Flask app the `dash` recipe runs (`flask --app <file>:server run`)."""

from dash import Dash, Input, Output, dcc, html

app = Dash(__name__)  # serves under DASH_URL_BASE_PATHNAME, which the recipe sets to STUDIOS_BASE_PATH
server = app.server
app.layout = html.Div([
    html.H2("Studios Dash check"),
    dcc.Input(id="name", value="", type="text", placeholder="Your name"),
    html.Div(id="greeting"),
])


@app.callback(Output("greeting", "children"), Input("name", "value"))
def greet(name: str) -> str:
    return f"hello, {name or 'nobody'}"
