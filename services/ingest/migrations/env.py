from workpulse.migrate import run_env

run_env()
