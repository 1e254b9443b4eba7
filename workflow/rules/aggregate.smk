# Aggregation: tidy CSVs from all runs, then figures drawn from those CSVs.


rule toy_aggregate:
    input:
        toy_run_files(),
    output:
        history="results/toy/history.csv",
        summary="results/toy/summary.csv",
    log:
        "results/logs/toy/aggregate.log",
    threads: 1
    shell:
        "{JITPROP} toy-aggregate {input:q} --history {output.history:q}"
        " --summary {output.summary:q} 2> {log:q}"


rule toy_figures:
    input:
        "results/toy/history.csv",
    output:
        grid="results/figures/toy_loss_grid.png",
        overlay="results/figures/toy_loss_overlay.png",
    log:
        "results/logs/toy/figures.log",
    threads: 1
    shell:
        "{JITPROP} toy-plot {input:q} --grid {output.grid:q} --overlay {output.overlay:q} 2> {log:q}"


rule toy:
    input:
        rules.toy_aggregate.output,
        rules.toy_figures.output,
