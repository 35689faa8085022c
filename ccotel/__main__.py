from ccotel.entry import main

main()
