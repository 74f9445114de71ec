from smartapp.cli import main

main()
