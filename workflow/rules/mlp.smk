# The MLP on MNIST: one job per (learning rate, seed); the sweep's tables, then figures drawn
# from them.


rule mlp_run:
    input:
        mlp_inputs,
    output:
        history=results("mlp/runs/{run}/history.csv"),
        steps=results("mlp/runs/{run}/steps.csv"),
        summary=results("mlp/runs/{run}/summary.csv"),
        timing=results("mlp/runs/{run}/timing.csv"),
    log:
        results("logs/mlp/{run}.log"),
    threads: 1
    resources:
        mem_mb=400,
    params:
        jitprop=JITPROP,
        code=SOURCE,
        args=mlp_args,
        out=subpath(output.history, parent=True),
    shell:
        "{params.jitprop} --threads {threads} mlp {params.args:q} --out {params.out:q} 2> {log:q}"


rule mlp_aggregate:
    input:
        expand("{run}/{table}.csv", run=mlp_run_dirs(), table=FAMILIES["mlp"].tables),
    output:
        history=results("mlp/history.csv"),
        steps=results("mlp/steps.csv"),
        summary=report(
            results("mlp/summary.csv"),
            caption="../report/mlp_summary.rst",
            category="MLP",
            subcategory="Tables",
            labels={"result": "one row per run"},
        ),
        summary_by_lr=report(
            results("mlp/summary_by_lr.csv"),
            caption="../report/mlp_summary_by_lr.rst",
            category="MLP",
            subcategory="Tables",
            labels={"result": "one row per learning rate"},
        ),
        timing=results("mlp/timing.csv"),
    log:
        results("logs/mlp/aggregate.log"),
    threads: 1
    params:
        jitprop=JITPROP,
        code=SOURCE,
        runs=mlp_run_dirs(),
        out=subpath(output.history, parent=True),
    shell:
        "{params.jitprop} mlp-aggregate {params.runs:q} --out {params.out:q} 2> {log:q}"


rule mlp_figures:
    input:
        rules.mlp_aggregate.output,
    output:
        report(
            results("figures/mlp_loss_curves.png"),
            caption="../report/mlp_loss_curves.rst",
            category="MLP",
            subcategory="Figures",
            labels={"result": "loss per epoch"},
        ),
        report(
            results("figures/mlp_accuracy_curves.png"),
            caption="../report/mlp_accuracy_curves.rst",
            category="MLP",
            subcategory="Figures",
            labels={"result": "accuracy per epoch"},
        ),
        report(
            results("figures/mlp_accuracy_vs_lr.png"),
            caption="../report/mlp_accuracy_vs_lr.rst",
            category="MLP",
            subcategory="Figures",
            labels={"result": "final accuracy vs learning rate"},
        ),
    log:
        results("logs/mlp/figures.log"),
    threads: 1
    params:
        jitprop=JITPROP,
        code=SOURCE,
        results=subpath(input[0], parent=True),
        figures=subpath(output[0], parent=True),
    shell:
        "{params.jitprop} mlp-plot {params.results:q} --figures {params.figures:q} 2> {log:q}"


rule mlp:
    input:
        rules.mlp_aggregate.output,
        results("mlp/provenance.json"),
        rules.mlp_figures.output,
