"""Summarise the fidelity JSON files of run.sh into a Markdown table (stdout and OUT_DIR/summary.md)."""
import json
import pathlib
import sys

from hamecho.tools.gradcheck import summarize

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/fidelity/results")
lines = ["| case | L | RHEL min cosine | RHEL max \\|ratio−1\\| | f32 BPTT min cosine | f32 BPTT max \\|ratio−1\\| "
         "| retrace |",
         "|---|---|---|---|---|---|---|"]
for path in sorted(out.glob("*.json")):
    report = json.loads(path.read_text())
    rhel, floor = summarize(report["params"]), summarize(report["params"], "floor_")
    lines.append(f"| {path.stem} | {report['config']['length']} | {rhel['min_cosine']:.8f} | "
                 f"{rhel['max_norm_ratio_dev']:.2e} | {floor['min_cosine']:.8f} | {floor['max_norm_ratio_dev']:.2e} | "
                 f"{report['retrace_error']:.1e} |")
text = "\n".join(lines)
(out / "summary.md").write_text(text + "\n")
print(text)
