# What made each family's tables, beside them: its config section, the hash of jitprop's
# source the jobs ran, the git commit, package versions and the machine. Rewritten when the tables
# are, or the code or the section changes, and only then: a target that runs one family
# leaves the others' records as it leaves their tables.
rule provenance:
    input:
        results("{family}/summary.csv"),
    output:
        results("{family}/provenance.json"),
    log:
        results("logs/{family}/provenance.log"),
    wildcard_constraints:
        family="|".join(FAMILIES),
    threads: 1
    params:
        jitprop=JITPROP,
        code=SOURCE,
        section=family_section,
        source=workflow.basedir,
    shell:
        "{params.jitprop} provenance {wildcards.family} --config {params.section:q}"
        " --source {params.code} --source-dir {params.source:q} --out {output:q} 2> {log:q}"
