// platform tests follow
