# The 2-2-2 exercise network: one job per (learning rate, start), or per chunk of
# toy.runs_per_job runs; the sweep's tables, then figures drawn from them.


rule toy_run:
    output:
        history="results/toy/runs/{part}/history.csv",
        summary="results/toy/runs/{part}/summary.csv",
    log:
        "results/logs/toy/{part}.log",
    threads: 1
    params:
        jitprop=JITPROP,
        args=toy_args,
        out=subpath(output.history, parent=True),
    shell:
        "{params.jitprop} --threads {threads} toy {params.args:q} --out {params.out:q} 2> {log:q}"


rule toy_aggregate:
    input:
        expand("{run}/{table}.csv", run=toy_run_dirs(), table=["history", "summary"]),
    output:
        "results/toy/history.csv",
        "results/toy/summary.csv",
    log:
        "results/logs/toy/aggregate.log",
    threads: 1
    params:
        jitprop=JITPROP,
        runs=toy_run_dirs(),
    shell:
        "{params.jitprop} toy-aggregate {params.runs:q} --out results/toy 2> {log:q}"


rule toy_figures:
    input:
        "results/toy/history.csv",
    output:
        "results/figures/toy_loss_grid.png",
        "results/figures/toy_loss_overlay.png",
    log:
        "results/logs/toy/figures.log",
    threads: 1
    params:
        jitprop=JITPROP,
    shell:
        "{params.jitprop} toy-plot results/toy --figures results/figures 2> {log:q}"


rule toy:
    input:
        rules.toy_aggregate.output,
        rules.toy_figures.output,
