"""The fine-tuning loop: data and model in, events out, an `Outcome` back.

Plain Python on accelerate. It never prints and never touches the store: the
worker turns its events into rows. The loss is accumulated on the device and
read only at the logging interval, because `.item()` each step forces a GPU
sync and stalls the pipeline.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from engine.config import RunConfig
from engine.data import (
    Collator,
    LengthGroupedBatches,
    TextExamples,
    load_text_classification,
    sorted_batches,
)
from engine.errors import HubtuneError
from engine.events import EvalFinished, Event, Note, Outcome, RunPrepared, StepLogged
from engine.metrics import classification_scores, confusion_matrix
from engine.models import build_model


def resolve_precision(requested: str) -> str:
    """accelerate's mixed_precision value for a config's precision."""
    cuda = torch.cuda.is_available()
    if requested == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    if requested in ("bf16", "fp16") and not cuda:
        raise HubtuneError(f"train.precision {requested} needs a GPU; use auto or fp32 on the CPU.")
    return {"fp32": "no"}.get(requested, requested)


def lr_lambda(total: int, warmup: int, kind: str) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1 - progress)

    return factor


def param_groups(model, cfg: RunConfig) -> list[dict]:
    """AdamW groups: no decay on biases and norms; the head may have its own rate."""
    head_lr = cfg.train.head_learning_rate or cfg.train.learning_rate
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = not name.startswith("backbone.")
        decay = p.ndim >= 2
        groups.setdefault((is_head, decay), []).append(p)
    return [
        {
            "params": params,
            "lr": head_lr if is_head else cfg.train.learning_rate,
            "weight_decay": cfg.train.weight_decay if decay else 0.0,
            "name": f"{'head' if is_head else 'backbone'}{'' if decay else '/no_decay'}",
        }
        for (is_head, decay), params in sorted(groups.items())
    ]


def train(
    cfg: RunConfig,
    emit: Callable[[Event], None],
    stop: threading.Event,
    *,
    out_dir: Path | None = None,
) -> Outcome:
    """Fine-tune per cfg; returns when done, stopped or diverged."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    set_seed(cfg.train.seed)
    precision = resolve_precision(cfg.train.precision)
    accelerator = Accelerator(
        mixed_precision=precision, gradient_accumulation_steps=cfg.train.grad_accumulation
    )
    emit(Note(f"Loading {cfg.model.id}"))
    # Labels decide the head's width, so read the data with the tokenizer first.
    from transformers import AutoTokenizer

    from engine.models import check_loadable, quiet_transformers, resolve_model_path

    quiet_transformers()
    path = resolve_model_path(cfg.model)
    check_loadable(path, cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
    data = load_text_classification(cfg, tokenizer)
    regression = cfg.head.task == "regression"
    num_labels = 1 if regression else len(data.labels)
    built = build_model(cfg.model, cfg.head, num_labels)
    model = built.model
    emit(Note(f"Pooling: {built.pooling}; {len(data.train)} training and "
              f"{len(data.validation)} validation examples"))

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    sampler = LengthGroupedBatches(data.train.lengths, cfg.train.batch_size, cfg.train.seed)
    collate = Collator(data.train, pad_id, regression)
    loader = torch.utils.data.DataLoader(
        list(range(len(data.train))), batch_sampler=sampler, collate_fn=collate
    )
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg),
        lr=cfg.train.learning_rate,
        fused=torch.cuda.is_available() or None,
    )
    steps_per_epoch = max(1, -(-len(sampler) // cfg.train.grad_accumulation))
    total_steps = math.ceil(cfg.train.epochs * steps_per_epoch)
    if cfg.train.max_steps:
        total_steps = min(total_steps, cfg.train.max_steps)
    warmup = int(cfg.train.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(total_steps, warmup, cfg.train.scheduler)
    )
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    device = accelerator.device

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    emit(
        RunPrepared(
            total_steps=total_steps,
            train_samples=len(data.train),
            validation_samples=len(data.validation),
            labels=data.labels,
            device=str(device),
            precision=precision,
            trainable_params=trainable,
            total_params=sum(p.numel() for p in model.parameters()),
        )
    )

    watch = cfg.train.early_stopping.metric if cfg.train.early_stopping else "accuracy"
    if regression and watch == "accuracy":
        watch = "loss"
    minimise = watch == "loss"
    best: dict[str, float] | None = None
    best_step = 0
    evals_without_gain = 0
    eval_every = cfg.train.eval_every
    last_eval: dict[str, float] = {}
    baseline = _majority_baseline(data.validation, data.majority_class, len(data.labels))

    step = 0
    epoch = 0
    running_loss = torch.zeros((), device=device)
    running_tokens = torch.zeros((), device=device, dtype=torch.long)
    running_batches = 0
    samples = 0
    window_start = time.perf_counter()
    status = "completed"
    model.train()

    def evaluate() -> dict[str, float]:
        nonlocal best, best_step, evals_without_gain, last_eval
        metrics = run_evaluation(model, data.validation, cfg, pad_id, len(data.labels), device)
        last_eval = metrics
        emit(EvalFinished(step=step, epoch=step / steps_per_epoch, metrics=_prefixed(metrics)))
        score = metrics.get(watch)
        if score is None:
            raise HubtuneError(
                f"train.early_stopping.metric {watch!r} is not computed for this task; "
                f"use one of {', '.join(k for k in metrics if k != 'confusion')}."
            )
        improved = best is None or (score < best[watch] if minimise else score > best[watch])
        if improved:
            best, best_step, evals_without_gain = metrics, step, 0
        else:
            evals_without_gain += 1
        return metrics

    last_eval_step = -1
    done = False
    while not done:
        sampler.set_epoch(epoch)
        for batch in loader:
            if stop.is_set():
                status, done = "stopped", True
                break
            with accelerator.accumulate(model):
                loss, _ = model(**batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.train.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            running_loss += loss.detach()
            running_tokens += batch["attention_mask"].sum()  # stays on the device
            running_batches += 1
            samples += batch["input_ids"].shape[0]
            if not accelerator.sync_gradients:
                continue
            step += 1
            if step % cfg.train.log_every == 0 or step == total_steps:
                mean_loss = float(running_loss) / running_batches  # the one sync per interval
                if not math.isfinite(mean_loss):
                    return Outcome(
                        "failed",
                        summary={"steps": step},
                        error=f"Training diverged (loss is {mean_loss}) at step {step}; "
                        "lower train.learning_rate or keep max_grad_norm set.",
                    )
                elapsed = max(time.perf_counter() - window_start, 1e-9)
                emit(
                    StepLogged(
                        step=step,
                        epoch=step / steps_per_epoch,
                        metrics={
                            "loss": mean_loss,
                            "lr": scheduler.get_last_lr()[0],
                            "samples_per_s": samples / elapsed,
                            "tokens_per_s": float(running_tokens) / elapsed,
                        },
                    )
                )
                running_loss.zero_()
                running_tokens.zero_()
                running_batches = samples = 0
                window_start = time.perf_counter()
            end_of_epoch = step % steps_per_epoch == 0
            if (eval_every == "epoch" and end_of_epoch) or (
                isinstance(eval_every, int) and step % eval_every == 0
            ):
                evaluate()
                last_eval_step = step
                if _should_stop_early(cfg, evals_without_gain):
                    emit(Note(f"Early stopping: no gain in {watch} for "
                              f"{evals_without_gain} evaluations"))
                    done = True
                    break
            if step >= total_steps:
                done = True
                break
        epoch += 1
    if status == "completed" and last_eval_step != step:
        evaluate()

    if out_dir is not None and status == "completed":
        save_model(accelerator.unwrap_model(model), tokenizer, data.labels, built.pooling, cfg, out_dir)
    summary = {
        "steps": step,
        "epochs": round(step / steps_per_epoch, 3),
        "labels": list(data.labels),
        "watched_metric": watch,
        "best_step": best_step,
        **{f"final_{k}": v for k, v in last_eval.items() if k != "confusion"},
        **{f"best_{k}": v for k, v in (best or {}).items() if k != "confusion"},
        "confusion": last_eval.get("confusion"),
        **baseline,
    }
    return Outcome(status, summary=summary)


def _prefixed(metrics: dict) -> dict[str, float]:
    return {f"val_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}


def _should_stop_early(cfg: RunConfig, evals_without_gain: int) -> bool:
    es = cfg.train.early_stopping
    return es is not None and evals_without_gain >= es.patience


def _majority_baseline(val: TextExamples, majority: int | None, num_labels: int) -> dict:
    if majority is None or not len(val):
        return {}
    labels = torch.tensor(val.labels)
    preds = torch.full_like(labels, majority)
    scores = classification_scores(confusion_matrix(labels, preds, num_labels))
    return {f"baseline_majority_{k}": v for k, v in scores.items()}


@torch.no_grad()
def run_evaluation(model, examples: TextExamples, cfg: RunConfig, pad_id: int, num_labels: int,
                   device) -> dict:
    """Loss and task metrics over a whole split; predictions stay on the device."""
    regression = cfg.head.task == "regression"
    was_training = model.training
    model.eval()
    collate = Collator(examples, pad_id, regression)
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    preds, golds = [], []
    for indices in sorted_batches(examples.lengths, cfg.train.batch_size * 2):
        batch = {k: v.to(device, non_blocking=True) for k, v in collate(indices).items()}
        loss, logits = model(**batch)
        total_loss += loss.double() * len(indices)
        golds.append(batch["labels"])
        preds.append(logits.squeeze(-1) if regression else logits.argmax(-1))
    model.train(was_training)
    gold = torch.cat(golds)
    pred = torch.cat(preds)
    metrics: dict = {"loss": float(total_loss) / len(examples)}
    if regression:
        metrics["mse"] = float(((pred.float() - gold.float()) ** 2).mean())
        metrics["mae"] = float((pred.float() - gold.float()).abs().mean())
    else:
        cm = confusion_matrix(gold, pred, num_labels)
        metrics.update(classification_scores(cm))
        metrics["confusion"] = cm.tolist()
    return metrics


def save_model(model, tokenizer, labels, pooling: str, cfg: RunConfig, out_dir: Path) -> Path:
    """Weights as safetensors plus the tokenizer and what the head needs to be rebuilt."""
    import json

    from safetensors.torch import save_model as save_safetensors

    target = Path(out_dir) / "model"
    target.mkdir(parents=True, exist_ok=True)
    save_safetensors(model, str(target / "model.safetensors"))
    tokenizer.save_pretrained(target)
    model.backbone.config.save_pretrained(target)
    (target / "hubtune_head.json").write_text(
        json.dumps(
            {"task": cfg.head.task, "labels": list(labels), "pooling": pooling,
             "base_model": cfg.model.id},
            indent=2,
        ),
        encoding="utf-8",
    )
    return target
