# The 2-2-2 exercise network: one job per (learning rate, start), or per chunk of
# toy.runs_per_job runs.


rule toy_run:
    output:
        history="results/toy/runs/{part}.csv",
        summary="results/toy/runs/{part}.summary.csv",
    log:
        "results/logs/toy/{part}.log",
    threads: 1
    params:
        jitprop=JITPROP,
        args=toy_run_args,
    shell:
        "{params.jitprop} --threads {threads} toy {params.args:q} --out {output.history:q}"
        " --summary {output.summary:q} 2> {log:q}"
