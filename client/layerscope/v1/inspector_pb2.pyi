from layerscope.v1 import capture_pb2 as _capture_pb2
from layerscope.v1 import diagnosis_pb2 as _diagnosis_pb2
from layerscope.v1 import models_pb2 as _models_pb2
from layerscope.v1 import monitor_pb2 as _monitor_pb2
from layerscope.v1 import runs_pb2 as _runs_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
