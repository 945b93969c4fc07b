from peregrine.cli import main

main()
