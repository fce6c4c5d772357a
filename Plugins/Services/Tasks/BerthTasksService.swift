// BerthTasksService: placeholder until its first implementation lands.
