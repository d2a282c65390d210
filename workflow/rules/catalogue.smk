# catalogue: join objects, features and every model's predictions, add the photometric
# stellar mass; publish Parquet, FITS and a VOTable with the same columns and metadata.


rule catalogue:
    input:
        objects=f"{OUT}/objects.parquet",
        features=get_features,
        predictions=get_predictions,
    output:
        parquet=f"{OUT}/catalogue.parquet",
        fits=f"{OUT}/catalogue.fits",
        votable=f"{OUT}/catalogue.vot",
    params:
        config=get_catalogue_config,
        config_hash=get_config_hash_param,
    log:
        f"{LOGS}/catalogue.log",
    benchmark:
        f"{BENCH}/catalogue.tsv"
    conda:
        ENV
    shell:
        "galcat catalogue --config-json {params.config:q} --config-hash {params.config_hash}"
        " --objects {input.objects} --features {input.features}"
        " --predictions {input.predictions}"
        " --output-parquet {output.parquet} --output-fits {output.fits}"
        " --output-votable {output.votable} 2> {log}"
