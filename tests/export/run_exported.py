"""Run exported models as a user without nasspeech would: ``python -I run_exported.py JOB``.

``nasspeech`` is made unimportable before anything else (an import hook, since an editable
install would otherwise still be found), then each job entry's model is run with
onnxruntime or ``torch.jit.load`` on the saved inputs, and the outputs are saved as .npy.
Writes ``{"nasspeech_importable": bool, "done": [...]}`` to JOB's ``result``.
"""

import importlib.abc
import json
import sys


class _NoNasspeech(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "nasspeech" or name.startswith("nasspeech."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden for this test)")


sys.meta_path.insert(0, _NoNasspeech())

import numpy as np
import onnxruntime as ort
import torch

torch.set_num_threads(1)


def main(job_path: str) -> None:
    with open(job_path) as fh:
        job = json.load(fh)
    try:
        import nasspeech  # noqa: F401
        importable = True
    except ModuleNotFoundError:
        importable = False
    done = []
    for entry in job["entries"]:
        with open(entry["model"] + ".json") as fh:
            contract = json.load(fh)
        x = np.load(entry["input"])
        assert list(x.shape[1:]) == contract["input"]["shape"][1:]
        if contract["format"] == "onnx":
            session = ort.InferenceSession(entry["model"], providers=["CPUExecutionProvider"])
            logits, probs = session.run(["logits", "probabilities"],
                                        {contract["input"]["name"]: x})
        else:
            model = torch.jit.load(entry["model"])
            with torch.no_grad():
                logits, probs = (t.numpy() for t in model(torch.from_numpy(x)))
        np.save(entry["output"] + ".logits.npy", logits)
        np.save(entry["output"] + ".probabilities.npy", probs)
        done.append(entry["output"])
    with open(job["result"], "w") as fh:
        json.dump({"nasspeech_importable": importable,
                   "modules": sorted(m for m in sys.modules if m.startswith("nasspeech")),
                   "done": done}, fh)


if __name__ == "__main__":
    main(sys.argv[1])
