# End-to-end tests of the Django example (examples/django): label "django". Each starts its own
# moto, gunicorn (4 workers) and Caddy on free ports and stops them even when it fails.
# Included from tests/CMakeLists.txt: include(${CMAKE_CURRENT_SOURCE_DIR}/django.cmake)
add_script_test(django_e2e_kill_restore django bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/django_e2e.sh ${PROJECT_BINARY_DIR})
add_script_test(django_manage_commands django bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/django_manage.sh ${PROJECT_BINARY_DIR})
add_script_test(django_browser_screenshot django bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/django_browser.sh ${PROJECT_BINARY_DIR})
set_tests_properties(django_e2e_kill_restore django_manage_commands django_browser_screenshot PROPERTIES
  TIMEOUT 300 ATTACHED_FILES_ON_FAIL ${PROJECT_BINARY_DIR}/artifacts/django.png)
set_tests_properties(django_browser_screenshot PROPERTIES ATTACHED_FILES ${PROJECT_BINARY_DIR}/artifacts/django.png)
