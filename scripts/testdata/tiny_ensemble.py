"""Writes a small, randomly initialised TorchScript ensemble and its manifest into OUT_DIR.

Used by tests that exercise the service's wiring (loading, hashing, the inference worker, the
hook path) independently of the shipped, trained ensemble in models/. Its outputs are
meaningless; tests that need a meaningful prediction use models/ensemble.

    python scripts/testdata/tiny_ensemble.py OUT_DIR [--members 3] [--shape 16] [--seed 0]
"""
import argparse, hashlib, json, os

import torch


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(2, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        h = torch.relu(self.conv(x)).mean(dim=(2, 3, 4))
        return self.fc(h)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--shape", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    members = []
    for i in range(a.members):
        torch.manual_seed(a.seed + i)
        m = Tiny().eval()
        ex = torch.zeros(1, 2, a.shape, a.shape, a.shape)
        traced = torch.jit.trace(m, ex)
        f = f"member-{i}.pt"
        traced.save(os.path.join(a.out, f))
        h = hashlib.sha256(open(os.path.join(a.out, f), "rb").read()).hexdigest()
        members.append({"file": f, "sha256": h})
    manifest = {
        "name": "tiny-test-ensemble", "version": "0.0.0-test",
        "classes": ["gbm", "pcnsl"],
        "input": {"channels": ["t1c", "t2"], "shape": [a.shape] * 3, "spacing_mm": 2.0,
                  "normalisation": "robust z-score inside the head mask"},
        "preprocessing_version": "neurocds-prep/2",
        "members": members,
        "calibration": {"method": "none"},
        "thresholds": {"lymphoma_likely": 0.6, "gbm_likely": 0.4},
        "max_member_spread": 0.9,
        "card": {"note": "random weights; made by scripts/testdata/tiny_ensemble.py for wiring tests"},
    }
    json.dump(manifest, open(os.path.join(a.out, "manifest.json"), "w"), indent=2)


if __name__ == "__main__":
    main()
