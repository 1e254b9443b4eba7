"""The model families jitprop trains, named once: the config's sections, the runs, the tables,
the figures, the command line and the rules all read this registry rather than spelling the list
again.  Pure: it imports nothing of jitprop."""

from collections import namedtuple

# name: the config section, results folder, rule and command prefix; title: how figures and
# the report name it; tables: what each run writes; on_data: whether it trains on a dataset.
Family = namedtuple("Family", ["name", "title", "tables", "on_data"])

FAMILIES = {
    "toy": Family("toy", "Toy net", ("history", "summary"), False),
    "mlp": Family("mlp", "MLP", ("history", "steps", "summary", "timing"), True),
    "cnn": Family("cnn", "CNN", ("history", "steps", "summary", "misclassified", "timing"), True),
}
NAMES = tuple(FAMILIES)
# The families that train on images (MNIST), a run per learning rate and seed.
ON_DATA = tuple(name for name, family in FAMILIES.items() if family.on_data)
