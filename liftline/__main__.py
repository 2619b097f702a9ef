from liftline.cli.main import main

main()
