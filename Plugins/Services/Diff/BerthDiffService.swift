// BerthDiffService: placeholder until its first implementation lands.
