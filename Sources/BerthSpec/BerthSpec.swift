// BerthSpec: placeholder until its first implementation lands.
