// BerthRegistry: placeholder until its first implementation lands.
