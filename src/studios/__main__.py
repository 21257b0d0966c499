from studios.cli import app

app()
