from prefgate.cli import main

main()
