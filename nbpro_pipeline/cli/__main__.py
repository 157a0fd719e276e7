from nbpro_pipeline.cli import main

main()
