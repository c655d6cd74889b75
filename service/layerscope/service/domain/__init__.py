"""Plain data shared by every part of the service, one module per kind of thing it holds.

Nothing here knows Keras, TensorFlow, gRPC or SQL: the capture engine produces these values, the diagnosis
rules read them, the store persists them and the transport converts them.

- `summary`: the statistics of one captured tensor, and their NumPy reference implementation
- `findings`: what a diagnosis rule reports
- `description`: a model's layer graph as the rules read it
- `models`: a loaded model as callers name and see it
- `runs`: stored captures and diagnoses, their queries, and the `RunStore` protocol
- `jsonable`: evidence made fit for JSON and protobuf Struct
- `selection`: which layers a capture looks at and what it takes from each
- `model_health`: a loaded model's health as the dashboards show it
- `training`: targets, losses and the training probe's options and results
- `text`: quoting names safely in messages
"""
