"""Run by the tritonclient test in its own environment: what an existing KServe v2 client would do.

usage: triton_script.py TARGET MODEL INPUTS.npy OUTPUTS.npy; prints one JSON line for the test to check.
"""

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

target, model, inputs_path, outputs_path = sys.argv[1:5]
client = grpcclient.InferenceServerClient(url=target)
report = {
    "live": client.is_server_live(),
    "ready": client.is_server_ready(),
    "model_ready": client.is_model_ready(model),
}
metadata = client.get_model_metadata(model, as_json=True)
x = np.load(inputs_path)
request = grpcclient.InferInput(metadata["inputs"][0]["name"], list(x.shape), metadata["inputs"][0]["datatype"])
request.set_data_from_numpy(x)
output_name = metadata["outputs"][0]["name"]
result = client.infer(model, [request], outputs=[grpcclient.InferRequestedOutput(output_name)], request_id="t1")
np.save(outputs_path, result.as_numpy(output_name))
try:
    client.get_model_metadata("no-such-model")
except InferenceServerException as exc:
    report["unknown_model_status"] = exc.status()
report.update(metadata=metadata, response=result.get_response(as_json=True))
client.close()
print(json.dumps(report))
