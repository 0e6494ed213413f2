"""The baseline for benchmarks/serving.py: the least code that serves an ONNX model over HTTP.

One Starlette route, one onnxruntime session, the same request and answer JSON as the Greenlight endpoint
(rows or records in; predictions in the spec's labels, probabilities keyed by label and the model version
out), no validation, auth or metrics: what a hand-written endpoint costs on this machine, so the benchmark
can say what the product adds. It reads the column order and the labels from a spec JSON file
(Spec.model_dump(mode="json")) once, and does nothing with the spec per request beyond that.

    python benchmarks/minimal_endpoint.py --onnx model.onnx --spec spec.json --port 3200
"""

import argparse
import json
import math

import numpy as np
import onnxruntime as ort
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


def build_app(onnx_path: str, spec: dict) -> Starlette:
    """A Starlette app answering POST /predict and GET /readyz with one shared session."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the server gets one core in the benchmark
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    features = spec["dataset"]["features"]
    numeric = [f["name"] for f in features if f["type"] == "numeric"]
    categorical = [f["name"] for f in features if f["type"] in ("categorical", "binary")]
    pixels = [c for f in features if f["type"] == "image_grid" for c in f["columns"]]
    labels = spec["dataset"]["target"]["labels"]
    label_texts = [json.dumps(label).strip('"') for label in labels]

    def text(value: object) -> str:
        return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

    def feeds(body: dict) -> dict[str, np.ndarray]:
        if "rows" in body:
            return {("pixels" if pixels else "numeric"): np.asarray(body["rows"], dtype=np.float32)}
        records = body["records"]
        if pixels:
            return {"pixels": np.array([[r[c] for c in pixels] for r in records], dtype=np.float32)}
        numbers = [[math.nan if r.get(c) is None else r[c] for c in numeric] for r in records]
        categories = [[text(r.get(c)) for c in categorical] for r in records]
        return {"numeric": np.array(numbers, dtype=np.float32), "categorical": np.array(categories, dtype=object)}

    async def predict(request: Request) -> Response:
        (logits,) = session.run(None, feeds(json.loads(await request.body())))
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        body = {
            "predictions": [labels[i] for i in probabilities.argmax(axis=1).tolist()],
            "probabilities": [dict(zip(label_texts, row, strict=True)) for row in probabilities.tolist()],
            "model_version": "minimal",
            "model_name": "minimal",
        }
        return Response(json.dumps(body), media_type="application/json")

    async def readyz(_: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", readyz)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", required=True, help="ONNX file in the spec's hand-off, answering logits")
    parser.add_argument("--spec", required=True, help="the model's spec as JSON (Spec.model_dump(mode='json'))")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3200)
    args = parser.parse_args()
    with open(args.spec) as file:
        spec = json.load(file)
    uvicorn.run(build_app(args.onnx, spec), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
