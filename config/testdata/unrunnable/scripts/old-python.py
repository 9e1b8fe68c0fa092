#!/nonexistent/bin/python2
print "hi"
