# The 2-2-2 exercise network: one job per (learning rate, start).


rule toy_run:
    output:
        "results/toy/runs/lr~{lr}/start~{start}.csv",
    log:
        "results/logs/toy/lr~{lr}/start~{start}.log",
    threads: 1
    params:
        jitprop=JITPROP,
        args=toy_run_args,
    shell:
        "{params.jitprop} --threads {threads} toy --lr {wildcards.lr:q} {params.args:q} --out {output:q}"
        " 2> {log:q}"
