from image_updater.cli import main

raise SystemExit(main())
