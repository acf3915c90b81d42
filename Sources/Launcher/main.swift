print("headline-trainer")
