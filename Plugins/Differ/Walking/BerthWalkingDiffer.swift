// BerthWalkingDiffer: placeholder until its first implementation lands.
