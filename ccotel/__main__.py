from ccotel.cli import main

main()
