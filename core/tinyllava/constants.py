"""Numbers shared by the data pipeline and the model, kept in one place so they never drift apart."""

IGNORE_INDEX = -100
IMAGE_TOKEN_INDEX = -200
IMAGE_PLACEHOLDER = "<image>"
CHECKPOINT_FORMAT_VERSION = 1
MANIFEST_NAME = "tinyllava.json"
