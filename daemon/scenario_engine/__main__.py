from scenario_engine.cli import main

main()
