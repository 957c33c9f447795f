from disaster_recovery.lab.stack import main

if __name__ == "__main__":
    raise SystemExit(main())
