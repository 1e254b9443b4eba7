# Inputs: MNIST is downloaded into the schema's default data_dir only when a section's data_dir
# is left at that default; a directory the user names must already hold the files.


rule download_mnist:
    output:
        expand("{dir}/{name}", dir=DOWNLOAD_DIR, name=MNIST_GZ),
    log:
        results("logs/download_mnist.log"),
    # Retried downloads are cheap; a half-downloaded file is never renamed into place.
    retries: 1
    threads: 1
    params:
        jitprop=JITPROP,
        dest=subpath(output[0], parent=True),
        mirrors=config["mlp"]["mirrors"],
    shell:
        "{params.jitprop} download-mnist --dest={params.dest:q} --mirrors {params.mirrors:q} 2> {log:q}"
