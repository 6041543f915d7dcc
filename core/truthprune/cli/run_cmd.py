import typer
from .main import app
