from berdl_init.cli import main

main()
