"""The ONNX stage's result: the file chosen to serve among the compression candidates, with both parity checks."""

from dataclasses import dataclass
from pathlib import Path

from tasks.core.records import Link, Note, Record, RegistrationRequest, RunLinks
from tasks.core.spec import Spec
from tasks.data.files import file_sha256
from tasks.data.parts import DataSplits
from tasks.model.lineage import Lineage
from tasks.onnx.compress import CompressionResult
from tasks.onnx.export import check_parity
from tasks.onnx.runtime import ParityReport


@dataclass(frozen=True)
class ServedCandidate:
    """What the registry registers and the gate judges: the candidates, the chosen file, and its parity against
    PyTorch (parity_fp32: the trained model's export; parity_served: the chosen file against its own torch model)."""

    compression: CompressionResult
    parity_fp32: ParityReport
    parity_served: ParityReport

    @property
    def path(self) -> Path:
        return self.compression.chosen.path

    def record(self, links: RunLinks) -> Record:
        """Each candidate's size, validation metric and latency, the choice, the parity figures, the candidate
        files, the torch model a pruned or distilled file came from, and the candidates' table and plot."""
        compression = self.compression
        metrics = {
            "parity_fp32_max_abs_diff": self.parity_fp32.max_abs_diff,
            "parity_fp32_agreement": self.parity_fp32.agreement,
            "parity_served_max_abs_diff": self.parity_served.max_abs_diff,
            "parity_served_agreement": self.parity_served.agreement,
        }
        for c in compression.candidates:
            key = c.name.replace("-", "_").replace("+", "_")
            metrics |= {
                f"{key}_size_bytes": c.size_bytes,
                f"{key}_validation_metric": c.metric,
                f"{key}_latency_ms": c.latency_ms_per_batch,
                f"{key}_latency_ms_batch1": c.latency_ms_batch1,
            }
        if compression.latency_rounds is not None:  # how many interleaved rounds each latency median is of
            metrics |= {
                "latency_rounds": compression.latency_rounds.per_batch,
                "latency_rounds_batch1": compression.latency_rounds.batch1,
            }
        extra = []
        if compression.chosen.source != "fp32" and compression.chosen_checkpoint is not None:
            extra.append(compression.chosen_checkpoint)  # the served file's torch model, beside the trained one's
        markdown, images = compression.table_markdown(), ()
        if compression.plot is not None:
            extra.append(compression.plot)
            plot = f"compression/{compression.plot.name}"
            title = "Candidates: validation metric against latency, and their Pareto front"
            markdown += f"\n\n[{title}]({links.link(plot)})"
            images = (Link("compression-plot", plot, compression.plot.name, "Compression candidates"),)
        files = {"onnx_candidates": tuple(c.path for c in compression.candidates)}
        return Record(
            metrics=metrics,
            tags={"compression_choice": compression.chosen.name, **compression.step_tags()},
            files=files | ({"compression": tuple(extra)} if extra else {}),
            notes=(Note("compression", markdown, "Compression candidates"),),
            images=images,
        )

    def registration(
        self, model_name: str, spec: Spec, lineage: Lineage, data_summary: Path | None
    ) -> RegistrationRequest:
        """The chosen file as a new version's request; its gate verdict 'pending' until the gate decides."""
        chosen = self.compression.chosen
        tags = {
            "gate_verdict": "pending",
            "task": spec.dataset.task,
            "target": spec.dataset.target.name,
            "model_family": spec.model.family,
            "validation_metric": f"{chosen.metric:.6f}",
            "compression": chosen.name,
            "model_size_bytes": str(chosen.size_bytes),
            "parity_fp32_max_abs_diff": f"{self.parity_fp32.max_abs_diff:.3e}",
            "parity_fp32_agreement": f"{self.parity_fp32.agreement:.6f}",
            "parity_served_agreement": f"{self.parity_served.agreement:.6f}",
            "data_sha256": lineage.data_sha256,
            # Verified by the service before it serves the file: what was gated is what answers.
            "onnx_sha256": file_sha256(chosen.path),
            **lineage.tags(),
        }
        description = f"{chosen.name} ONNX, validation metric {chosen.metric:.4f}. {self.compression.reason}"
        return RegistrationRequest(model_name, chosen.path, spec, tags, description, data_summary)


def serve_candidate(compression: CompressionResult, parity_fp32: ParityReport, splits: DataSplits) -> ServedCandidate:
    """The chosen file with its parity against the torch model it came from (the fp32 file's, checked on export,
    when that is the one served: trees, or nothing smaller chosen)."""
    chosen = compression.chosen
    fp32_path = next(c.path for c in compression.candidates if c.name == "fp32")
    parity_served = (
        parity_fp32
        if chosen.path == fp32_path
        else check_parity(onnx_path=chosen.path, checkpoint_path=compression.chosen_checkpoint, splits=splits)
    )
    return ServedCandidate(compression, parity_fp32, parity_served)
