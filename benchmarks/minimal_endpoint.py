"""The baseline for benchmarks/serving.py: the least code that serves an ONNX model over HTTP.

One Starlette route, one onnxruntime session, the same request and response JSON as the Greenlight
endpoint (rows in; labels, probabilities and the model version out), no validation, auth or metrics:
what a hand-written endpoint costs on this machine, so the benchmark can say what the product adds.

    python benchmarks/minimal_endpoint.py --onnx model.onnx --port 3200
"""

import argparse
import json

import numpy as np
import onnxruntime as ort
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"


def build_app(onnx_path: str) -> Starlette:
    """A Starlette app answering POST /predict and GET /readyz with one shared session."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the server gets one core in the benchmark
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])

    async def predict(request: Request) -> Response:
        rows = np.asarray(json.loads(await request.body())["rows"], dtype=np.float32)
        (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: rows})
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        body = {
            "labels": logits.argmax(axis=1).tolist(),
            "probabilities": probabilities.tolist(),
            "model_version": "minimal",
            "model_name": "minimal",
        }
        return Response(json.dumps(body), media_type="application/json")

    async def readyz(_: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", readyz)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", required=True, help="ONNX file with input 'pixels' and output 'logits'")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3200)
    args = parser.parse_args()
    uvicorn.run(build_app(args.onnx), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
