# jitprop: backpropagation experiments, from config.yaml to results/. Wiring only; the rules
# live in workflow/rules/, the logic in src/jitprop/.
from jitprop.config import ConfigError, validate_config
from jitprop.config import defaults as config_defaults
from jitprop.families import FAMILIES


configfile: "config.yaml"


# snakemake --report results/report.html: this text, then every output marked with report().
report: "workflow/report/workflow.rst"


try:
    # The schema, workflow/schemas/config.schema.yaml, ships with the package.
    config = validate_config(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None


# A run's directory: its swept settings (KEY~VALUE/...), then its learning rate and start or
# seed; toy runs may also go in chunks.
wildcard_constraints:
    part=r"([^/~]+~[^/]+/)*(lr~[^/]+/start~(sheet|seed[0-9]+)|chunk~[0-9]+)",
    run=r"([^/~]+~[^/]+/)*lr~[^/]+/seed~[0-9]+",


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/toy.smk"
include: "workflow/rules/mlp.smk"
include: "workflow/rules/cnn.smk"
include: "workflow/rules/provenance.smk"


# Light steps stay on the submitting machine under a cluster executor; the download needs the
# internet, which compute nodes often lack.
localrules:
    all,
    toy,
    mlp,
    download_mnist,
    toy_aggregate,
    toy_figures,
    toy_sheet,
    mlp_aggregate,
    mlp_figures,
    cnn,
    cnn_aggregate,
    cnn_figures,
    provenance,


rule all:
    default_target: True
    input:
        rules.toy.input,
        rules.mlp.input,
        rules.cnn.input,


onstart:
    # One run at a time per results directory (see jitprop.lock): a second run stops here,
    # before any job, naming the first. Dry runs and the jobs Snakemake spawns skip this.
    from jitprop import lock

    try:
        RESULTS_LOCK = lock.hold(RESULTS)
    except lock.Held as error:
        raise WorkflowError(str(error)) from None
