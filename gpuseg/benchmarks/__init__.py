"""What ``gpuseg bench`` runs: the engines side by side with scikit-learn, and the folder pipeline."""
