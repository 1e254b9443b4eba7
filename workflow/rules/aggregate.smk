# Aggregation: tidy CSVs from all runs, then figures drawn from those CSVs.


rule toy_aggregate:
    input:
        history=toy_part_files("csv"),
        summary=toy_part_files("summary.csv"),
    output:
        history="results/toy/history.csv",
        summary="results/toy/summary.csv",
    log:
        "results/logs/toy/aggregate.log",
    threads: 1
    params:
        jitprop=JITPROP,
    shell:
        "{params.jitprop} toy-aggregate {input.history:q} --summary-parts {input.summary:q}"
        " --history {output.history:q} --summary {output.summary:q} 2> {log:q}"


rule toy_figures:
    input:
        "results/toy/history.csv",
    output:
        grid="results/figures/toy_loss_grid.png",
        overlay="results/figures/toy_loss_overlay.png",
    log:
        "results/logs/toy/figures.log",
    threads: 1
    params:
        jitprop=JITPROP,
    shell:
        "{params.jitprop} toy-plot {input:q} --grid {output.grid:q} --overlay {output.overlay:q} 2> {log:q}"


rule toy:
    input:
        rules.toy_aggregate.output,
        rules.toy_figures.output,


rule mlp_aggregate:
    input:
        expand("{run}/{table}.csv", run=mlp_run_dirs(), table=MLP_TABLES),
    output:
        expand("results/mlp/{table}.csv", table=MLP_TABLES + ["summary_by_lr"]),
    log:
        "results/logs/mlp/aggregate.log",
    threads: 1
    params:
        jitprop=JITPROP,
        runs=mlp_run_dirs(),
    shell:
        "{params.jitprop} mlp-aggregate {params.runs:q} --out results/mlp 2> {log:q}"


rule mlp_figures:
    input:
        rules.mlp_aggregate.output,
    output:
        "results/figures/mlp_loss_curves.png",
        "results/figures/mlp_accuracy_curves.png",
        "results/figures/mlp_accuracy_vs_lr.png",
    log:
        "results/logs/mlp/figures.log",
    threads: 1
    params:
        jitprop=JITPROP,
    shell:
        "{params.jitprop} mlp-plot results/mlp --figures results/figures 2> {log:q}"


rule mlp:
    input:
        rules.mlp_aggregate.output,
        rules.mlp_figures.output,
