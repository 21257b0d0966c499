"""A Shiny for Python app for the browser tests: a text input and a line that follows it."""

from shiny import App, render, ui

app_ui = ui.page_fluid(
    ui.h2("Studios Shiny check"),
    ui.input_text("name", "Your name", ""),
    ui.output_text("greeting"),
)


def server(input, output, session):
    @render.text
    def greeting():
        return f"hello, {input.name() or 'nobody'}"


app = App(app_ui, server)
