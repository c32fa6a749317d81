"""`people-counter eval`: how well a run counted and tracked, against MOT Challenge ground truth."""
