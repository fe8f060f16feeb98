from archspec.cli.app import main

main()
