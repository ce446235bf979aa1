"""Entry module of the linear connector plugin: registration only, nothing heavy imported."""

from tinyllava.api import hookimpl

TINYLLAVA_PLUGIN_API = "1.0"


@hookimpl
def register_connectors() -> dict[str, str]:
    return {
        "linear": "tinyllava_plugin_linear.connector:LinearConnector",
        "identity": "tinyllava_plugin_linear.connector:IdentityConnector",
    }
