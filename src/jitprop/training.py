"""What every model family's training shares: learning-rate schedules, the divergence rule, the
epoch loop with its history rows, and evaluation in batches; the optimizer's update is
jitprop.kernels.optim's.  A family supplies only its network (see `fit`'s `model`)."""

import math
import time

import numpy as np

from jitprop import checks, data
from jitprop.jit import njit
from jitprop.kernels.elementary import cos_of

SCHEDULES = ("constant", "cosine", "onecycle")
# onecycle as PyTorch's OneCycleLR by default: up from lr / DIV for the first WARMUP of the steps,
# then down to lr / DIV / FINAL_DIV, both halves cosine-shaped (without its momentum cycling).
ONECYCLE_WARMUP, ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 0.3, 25.0, 1e4


def _cosine(start, end, fraction):
    return end + (start - end) * 0.5 * (1.0 + cos_of(np.pi * fraction))


def learning_rates(lr, schedule, total_steps, dtype):
    """The learning rate of every step: constant; cosine-annealed from lr towards 0 over the
    whole run (lr * (1 + cos(pi * step / total_steps)) / 2); or onecycle (see above)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"lr_schedule: expected one of {SCHEDULES}, found {schedule!r}")
    if schedule == "constant":
        return np.full(total_steps, lr, dtype=dtype)
    step = np.arange(total_steps, dtype=np.float64)
    if schedule == "cosine":
        return (lr * 0.5 * (1.0 + cos_of(np.pi * step / total_steps))).astype(dtype)
    # PyTorch's phase ends, unclamped: in runs of 3 steps or fewer the warm-up ends before step
    # 0 (up < 0, never 0 for a whole number of steps), and every step is on the way down.
    up = float(ONECYCLE_WARMUP * total_steps) - 1
    low, final = lr / ONECYCLE_DIV, lr / ONECYCLE_DIV / ONECYCLE_FINAL_DIV
    down = total_steps - 1 - up
    rates = np.where(
        step <= up, _cosine(low, lr, step / up), _cosine(lr, final, (step - up) / down)
    )
    return rates.astype(dtype)


@njit(cache=True)
def blown_up(batch_loss, limit):
    """The divergence rule: a batch's mean loss is NaN/inf or above `limit`, which is
    divergence_threshold times the first batch's (the untrained net's) loss.  The limit itself
    may be inf (before the first batch, or a threshold large enough to overflow it)."""
    return not (batch_loss <= limit and batch_loss < math.inf)  # `not <=` also catches NaN


EVALUATION_BATCH = 1000


def evaluate_in_batches(evaluate_batch, N, size=EVALUATION_BATCH):
    """(mean loss, accuracy) over N samples; evaluate_batch(index) gives (summed loss, correct
    predictions) of the samples `index`, which go in order, `size` at a time."""
    total, correct = 0.0, 0
    for start in range(0, N, size):
        batch_total, batch_correct = evaluate_batch(np.arange(start, min(start + size, N)))
        total += batch_total
        correct += batch_correct
    return total / N, correct / N


def _checked_set(name, data_set):
    """(images, labels) of an MNIST set as the trainers read it, or a ValueError naming what is
    wrong with it: images uint8 (N, 784), as data.load_split gives them, labels N in 0..9."""
    try:
        images, labels = (np.asarray(part) for part in data_set)
    except (TypeError, ValueError):
        found = type(data_set).__name__
        raise ValueError(f"{name}: expected a pair (images, labels), found a {found}") from None
    pixels, classes = data.PIXELS, data.CLASSES
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != pixels:
        raise ValueError(
            f"{name}[0]: expected uint8 images of shape (N, {pixels}), as data.load_split gives "
            f"them, found {images.dtype} {images.shape}"
        )
    if not len(images):
        raise ValueError(f"{name}: expected at least one image, found none")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{name}[1]: expected {len(images)} integer labels, one per image, found "
            f"{labels.dtype} {labels.shape}"
        )
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(
            f"{name}[1]: expected labels in 0..{classes - 1}, found {labels.min()}..{labels.max()}"
        )
    return images, labels


def checked_inputs(X, row_shape, dtype):
    """X for a family's loss_and_grads or predict, or a ValueError naming what is wrong: shape
    (N, *row_shape), N >= 1, real and finite once in `dtype` (returned contiguous)."""
    X = np.asarray(X)
    if X.shape[1:] != row_shape or not len(X):
        expected = ", ".join(map(str, ("N", *row_shape)))
        raise ValueError(f"X: expected shape ({expected}) with N >= 1, found {X.shape}")
    if X.dtype == bool or not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
        raise ValueError(f"X: expected real numbers, found {X.dtype}")
    X = np.ascontiguousarray(X, dtype=dtype)
    if not np.isfinite(X).all():
        raise ValueError(f"X: expected finite {dtype} values, found NaN or infinity")
    return X


def checked_labels(y, N, classes):
    """y for a family's loss_and_grads, or a ValueError naming what is wrong: N integer labels
    in 0..classes-1 (returned as int64)."""
    expected = f"y: expected {N} integer labels, one per row of X"
    if y is None:
        raise ValueError(f"{expected}, found None")
    y = np.asarray(y)
    if y.shape != (N,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{expected}, found {y.dtype} {y.shape}")
    if y.min() < 0 or y.max() >= classes:
        raise ValueError(f"y: expected labels in 0..{classes - 1}, found {y.min()}..{y.max()}")
    return np.ascontiguousarray(y, dtype=np.int64)


# The settings fit takes, named as the config's keys.
FIT_SETTINGS = ("epochs", "batch_size", "lr_schedule", "divergence_threshold", "log_every", "dtype")


def check_run(lr, seed):
    """A ValueError naming lr or seed unless lr is a finite number > 0 and seed an integer
    >= 0."""
    checks.checked_lr(lr)
    if not checks.whole_number(seed) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, found {seed!r}")


def train(make_trainer, train_set, test_set, settings, *, lr, seed, on_epoch=None, progress=None):
    """A family's run: one Generator, default_rng(seed), goes to
    make_trainer(train_set, test_set, settings, rng), which draws the initial weights, and then
    to `fit`, which draws the rest.  settings: the family's, complete (config.run_settings).
    Returns the trainer and fit's dict."""
    train_set, test_set = _checked_set("train_set", train_set), _checked_set("test_set", test_set)
    check_run(lr, seed)
    batch_size, N = settings["batch_size"], len(train_set[1])
    if not 1 <= batch_size <= N:  # before the trainer is built
        raise ValueError(f"batch_size: expected 1..{N}, found {batch_size}")
    rng = np.random.default_rng(seed)
    trainer = make_trainer(train_set, test_set, settings, rng)
    fit_settings = {key: settings[key] for key in FIT_SETTINGS}
    return trainer, fit(trainer, rng, lr=lr, on_epoch=on_epoch, progress=progress, **fit_settings)


def fit(
    model,
    rng,
    *,
    lr,
    epochs,
    batch_size,
    lr_schedule,
    divergence_threshold,
    log_every,
    dtype,
    on_epoch=None,
    progress=None,
):
    """Mini-batch training of `model` for `epochs` passes, each over a fresh shuffle drawn from
    `rng`.  Stops early, marked diverged, at the first batch that blows up (see blown_up).

    model: n_train, train_batches(totals, corrects, order, first, rates, limit) -> the number
    of batches whose loss was written (when the last of them blew up, its update was not made),
    evaluate() -> (test loss, test accuracy), and optionally begin_epoch(rng), which
    draws the epoch's other random numbers after its shuffle.
    Returns dict(history (per-epoch rows), steps (logged batch losses), timing (seconds of each
    epoch's training pass), diverged, diverged_step).  `on_epoch(epoch, row)` is called after
    each epoch; `progress(epoch, batches_done, batches)` now and then within one."""
    N = model.n_train
    history, steps, timing = [], [], []
    step, diverged_step, limit = 0, None, math.inf
    n_batches = -(-N // batch_size)
    # Batches go to the kernel in chunks: few calls from Python, yet a progress report and a
    # divergence check every chunk.  The first chunk is the first batch alone, whose loss (the
    # untrained net's) sets the divergence limit.
    chunk = max(1, n_batches // 50)
    rates = learning_rates(lr, lr_schedule, epochs * n_batches, dtype)
    totals, corrects = np.empty(n_batches), np.empty(n_batches, np.int64)
    sizes = np.minimum(batch_size, N - batch_size * np.arange(n_batches))
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        order = rng.permutation(N)
        if hasattr(model, "begin_epoch"):
            model.begin_epoch(rng)
        done = 0
        while done < n_batches and diverged_step is None:
            count = 1 if step == 0 else min(chunk, n_batches - done)
            trained = model.train_batches(
                totals[done : done + count],
                corrects[done : done + count],
                order,
                done * batch_size,
                rates[step : step + count],
                limit,
            )
            if step == 0:
                limit = divergence_threshold * (totals[0] / sizes[0])
            for i in range(done, done + trained):
                batch_loss = totals[i] / sizes[i]
                diverged = blown_up(batch_loss, limit)
                if step % log_every == 0 or diverged:
                    steps.append({"step": step, "epoch": epoch, "batch_loss": batch_loss})
                if diverged:
                    diverged_step = step
                    break
                step += 1
            done += trained
            if progress is not None and diverged_step is None:
                progress(epoch, done, n_batches)
        if diverged_step is not None:
            break
        timing.append({"epoch": epoch, "seconds": time.perf_counter() - started})
        test_loss, test_accuracy = model.evaluate()
        # cumsum adds in order, as the epoch did; np.sum's pairwise order would differ.
        row = {
            "epoch": epoch,
            "train_loss": float(np.cumsum(totals)[-1]) / N,
            "train_accuracy": int(corrects.sum()) / N,
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
        }
        history.append(row)
        if on_epoch is not None:
            on_epoch(epoch, row)
    return {
        "history": history,
        "steps": steps,
        "timing": timing,
        "diverged": diverged_step is not None,
        "diverged_step": diverged_step,
    }
