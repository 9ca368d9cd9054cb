from supervisor.ctl import main

main()
