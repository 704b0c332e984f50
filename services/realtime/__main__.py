from services.realtime.main import main

main()
