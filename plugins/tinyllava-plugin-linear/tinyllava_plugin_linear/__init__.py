"""Entry module of the linear connector plugin: registration only, nothing heavy imported."""

from tinyllava.plugins import hookimpl


@hookimpl
def register_connectors() -> dict[str, str]:
    return {
        "linear": "tinyllava_plugin_linear.connector:LinearConnector",
        "identity": "tinyllava_plugin_linear.connector:IdentityConnector",
    }
